//! One multiplexed, pipelined connection to one broker.
//!
//! ```text
//!  callers ──call()──▶ pending: correlation_id → (api, version, oneshot)
//!     │                          ▲
//!     └─ encoded frame ─▶ writer task ──▶ socket ──▶ reader task ─┘ (completes the slot)
//! ```
//!
//! Any number of callers share the connection; up to `in_flight_requests_max` requests
//! are on the wire at once. Frames are encoded as chunks that share record batches
//! instead of copying them, and the writer sends whatever frames are queued in one round
//! of vectored writes. When the socket fails, every pending request fails with
//! [`Error::Disconnected`] and the connection reports [`Connection::is_closed`], so the
//! [`Cluster`](crate::cluster::Cluster) replaces it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use strata_protocol::api::negotiate;
use strata_protocol::codec::{self, FrameCodec, RequestFrame};
use strata_protocol::frame::{self, RequestHeader};
use strata_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use strata_protocol::{ApiKey, Request, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::{Encoder, Framed, FramedRead};

use crate::config::ClientConfig;
use crate::error::{Error, Result};

/// Chunks the writer gathers from queued frames before it writes them.
const GATHER_CHUNKS_MAX: usize = 256;

struct Slot {
    api: ApiKey,
    api_version: u16,
    reply: oneshot::Sender<Result<Response>>,
    _permit: OwnedSemaphorePermit,
}

#[derive(Default)]
struct Pending {
    slots: HashMap<u32, Slot>,
    /// Why the connection closed; once set, no slot is added.
    closed: Option<String>,
}

/// State shared by callers and the two tasks. A std mutex: it is held for a map insert
/// or remove only, never across an await.
struct Shared {
    address: String,
    pending: Mutex<Pending>,
}

impl Shared {
    fn close(&self, reason: &str) {
        let slots = {
            let mut pending = self.pending.lock().expect("pending lock");
            if pending.closed.is_none() {
                pending.closed = Some(reason.to_owned());
            }
            std::mem::take(&mut pending.slots)
        };
        for (_, slot) in slots {
            let _ = slot.reply.send(Err(self.disconnected(reason)));
        }
    }

    fn disconnected(&self, reason: &str) -> Error {
        Error::Disconnected {
            address: self.address.clone(),
            reason: reason.to_owned(),
        }
    }
}

struct Outbound {
    /// The encoded frame: small owned chunks around shared record batches.
    frame: Vec<Bytes>,
    written: Option<oneshot::Sender<()>>,
}

/// A connection to one broker. Thread-safe: share it behind an `Arc`; dropping the last
/// handle closes the socket.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    client_id: String,
    versions: HashMap<u16, u16>,
    outbound: mpsc::Sender<Outbound>,
    in_flight: Arc<Semaphore>,
    next_correlation_id: AtomicU32,
    codec: FrameCodec,
    request_timeout: Duration,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("address", &self.shared.address)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Removes a request's slot if its caller stops waiting (timeout or cancellation).
struct SlotGuard<'a> {
    shared: &'a Shared,
    correlation_id: u32,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut pending = self.shared.pending.lock().expect("pending lock");
        pending.slots.remove(&self.correlation_id);
    }
}

impl Connection {
    /// Opens a connection and negotiates API versions.
    pub(crate) async fn connect(address: &str, config: &ClientConfig) -> Result<Self> {
        let timeout = Duration::from_millis(config.connect_timeout_ms);
        let timed_out = || Error::ConnectTimeout {
            address: address.to_owned(),
            timeout_ms: config.connect_timeout_ms,
        };
        let stream = tokio::time::timeout(timeout, async {
            let resolved = resolve(address).await?;
            TcpStream::connect(resolved.as_slice())
                .await
                .map_err(|source| Error::Connect {
                    address: address.to_owned(),
                    source: Arc::new(source),
                })
        })
        .await
        .map_err(|_| timed_out())??;
        let _ = stream.set_nodelay(true);
        let codec = FrameCodec::new(config.frame_bytes_max);
        let (stream, peer) =
            tokio::time::timeout(timeout, handshake(stream, codec, address, config))
                .await
                .map_err(|_| timed_out())??;
        let mut versions = HashMap::new();
        for api in ApiKey::ALL {
            if let Some(version) = negotiate(*api, &peer.apis) {
                versions.insert(*api as u16, version);
            }
        }
        let (read_half, write_half) = stream.into_split();
        let shared = Arc::new(Shared {
            address: address.to_owned(),
            pending: Mutex::new(Pending::default()),
        });
        let (outbound, receiver) = mpsc::channel(config.in_flight_requests_max);
        tokio::spawn(write_loop(write_half, receiver, Arc::clone(&shared)));
        let reader = tokio::spawn(read_loop(read_half, codec, Arc::clone(&shared)));
        tracing::debug!(address, broker = peer.broker_software_version, "connected");
        Ok(Self {
            shared,
            client_id: config.client_id.clone(),
            versions,
            outbound,
            in_flight: Arc::new(Semaphore::new(config.in_flight_requests_max)),
            next_correlation_id: AtomicU32::new(1),
            codec,
            request_timeout: config.request_timeout(),
            reader,
        })
    }

    /// Whether the socket failed or closed; a closed connection fails every request.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared
            .pending
            .lock()
            .expect("pending lock")
            .closed
            .is_some()
    }

    /// Encodes a request as chunks for a vectored write: record batches are shared, not
    /// copied.
    fn encode(&self, request: &Request) -> Result<(u32, u16, Vec<Bytes>)> {
        let api = request.api_key();
        let api_version =
            *self
                .versions
                .get(&(api as u16))
                .ok_or_else(|| Error::UnsupportedApi {
                    address: self.shared.address.clone(),
                    api: api.name(),
                })?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader {
            api_key: api as u16,
            api_version,
            correlation_id,
            client_id: self.client_id.clone(),
        };
        let frame = self
            .codec
            .encode_request_chunks(&header, request)
            .map_err(|error| Error::Protocol {
                address: self.shared.address.clone(),
                reason: format!("cannot send {}: {error}", api.name()),
            })?;
        Ok((correlation_id, api_version, frame))
    }

    /// Sends a request and waits for its response, up to `request_timeout_ms` plus
    /// `extra_wait` (a fetch's long-poll time). A timeout closes the connection.
    ///
    /// # Cancel safety
    /// Cancel-safe: a dropped call frees its slot; the request may still reach the broker.
    pub(crate) async fn call(&self, request: &Request, extra_wait: Duration) -> Result<Response> {
        self.call_then(request, extra_wait, || ()).await
    }

    /// [`call`](Self::call), running `queued` as soon as the request is queued for the
    /// socket, before the response: requests queued one after the other are written in
    /// that order. `queued` is dropped without running if the request never gets queued.
    ///
    /// # Cancel safety
    /// As for [`call`](Self::call).
    pub(crate) async fn call_then(
        &self,
        request: &Request,
        extra_wait: Duration,
        queued: impl FnOnce(),
    ) -> Result<Response> {
        let api = request.api_key();
        let timeout = self.request_timeout + extra_wait;
        let timed_out = || Error::RequestTimedOut {
            address: self.shared.address.clone(),
            api: api.name(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let result = tokio::time::timeout(timeout, self.call_inner(request, queued)).await;
        result.unwrap_or_else(|_| {
            // A broker that does not answer in time is presumed stuck (or the network
            // cut): close, so the next request reconnects instead of queueing behind it.
            self.shared.close("a request timed out");
            Err(timed_out())
        })
    }

    async fn call_inner(&self, request: &Request, queued: impl FnOnce()) -> Result<Response> {
        let permit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let (correlation_id, api_version, frame) = self.encode(request)?;
        let (reply, response) = oneshot::channel();
        {
            let mut pending = self.shared.pending.lock().expect("pending lock");
            if let Some(reason) = &pending.closed {
                return Err(self.shared.disconnected(reason));
            }
            let slot = Slot {
                api: request.api_key(),
                api_version,
                reply,
                _permit: permit,
            };
            pending.slots.insert(correlation_id, slot);
        }
        let _guard = SlotGuard {
            shared: &self.shared,
            correlation_id,
        };
        let outbound = Outbound {
            frame,
            written: None,
        };
        if self.outbound.send(outbound).await.is_err() {
            return Err(self.shared.disconnected("writer stopped"));
        }
        queued();
        match response.await {
            Ok(result) => result,
            Err(_) => Err(self.shared.disconnected("connection closed")),
        }
    }

    /// Sends a request that gets no response (a produce with `acks = none`) and returns
    /// once it was written to the socket.
    ///
    /// # Cancel safety
    /// Cancel-safe; the request may or may not be written.
    pub(crate) async fn send_only(&self, request: &Request) -> Result<()> {
        let (_, _, frame) = self.encode(request)?;
        if let Some(reason) = &self.shared.pending.lock().expect("pending lock").closed {
            return Err(self.shared.disconnected(reason));
        }
        let (written, done) = oneshot::channel();
        let outbound = Outbound {
            frame,
            written: Some(written),
        };
        let write = async {
            self.outbound
                .send(outbound)
                .await
                .map_err(|_| self.shared.disconnected("writer stopped"))?;
            done.await
                .map_err(|_| self.shared.disconnected("connection closed"))
        };
        tokio::time::timeout(self.request_timeout, write)
            .await
            .map_err(|_| Error::RequestTimedOut {
                address: self.shared.address.clone(),
                api: request.api_key().name(),
                timeout_ms: u64::try_from(self.request_timeout.as_millis()).unwrap_or(u64::MAX),
            })?
    }
}

/// The IP addresses of `address` (`host:port`), or [`Error::Resolve`] naming its host,
/// so that a mistyped name is reported as one and not as a refused connection.
async fn resolve(address: &str) -> Result<Vec<SocketAddr>> {
    let unresolved = |reason: String| Error::Resolve {
        address: address.to_owned(),
        host: host_of(address).to_owned(),
        reason,
    };
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|error| unresolved(error.to_string()))?
        .collect();
    if resolved.is_empty() {
        return Err(unresolved("no IP address".into()));
    }
    Ok(resolved)
}

/// The host part of `host:port` or `[v6-address]:port`.
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host)
}

/// ApiVersions v0, which every broker supports forever, before anything else.
async fn handshake(
    stream: TcpStream,
    codec: FrameCodec,
    address: &str,
    config: &ClientConfig,
) -> Result<(TcpStream, ApiVersionsResponse)> {
    let protocol_error = |reason: String| Error::Protocol {
        address: address.to_owned(),
        reason,
    };
    let header = RequestHeader {
        api_key: ApiKey::ApiVersions as u16,
        api_version: 0,
        correlation_id: 0,
        client_id: config.client_id.clone(),
    };
    let request = Request::ApiVersions(ApiVersionsRequest {
        client_software_name: "strata-client".into(),
        client_software_version: env!("CARGO_PKG_VERSION").into(),
    });
    let disconnected = |reason: String| Error::Disconnected {
        address: address.to_owned(),
        reason,
    };
    let mut buffer = BytesMut::new();
    let mut encoder = codec;
    encoder
        .encode(
            RequestFrame {
                header: &header,
                request: &request,
            },
            &mut buffer,
        )
        .map_err(|error| protocol_error(error.to_string()))?;
    let mut stream = stream;
    stream
        .write_all(&buffer)
        .await
        .map_err(|error| disconnected(error.to_string()))?;
    let mut framed = Framed::new(stream, codec);
    let payload = match framed.next().await {
        Some(Ok(payload)) => payload,
        Some(Err(error)) => return Err(disconnected(error.to_string())),
        None => return Err(disconnected("closed during the handshake".into())),
    };
    let (_, result) = frame::decode_response(&payload, ApiKey::ApiVersions as u16, 0)
        .map_err(|error| protocol_error(format!("bad ApiVersions response: {error}")))?;
    match result {
        Ok(Response::ApiVersions(response)) => {
            // Nothing else was sent, so nothing else can be buffered.
            assert!(framed.read_buffer().is_empty(), "bytes after the handshake");
            Ok((framed.into_inner(), response))
        }
        Ok(other) => Err(protocol_error(format!(
            "ApiVersions answered with {:?}",
            other.api_key()
        ))),
        Err((code, message)) => Err(Error::broker(code, Some(message))),
    }
}

async fn write_loop(
    mut write_half: OwnedWriteHalf,
    mut receiver: mpsc::Receiver<Outbound>,
    shared: Arc<Shared>,
) {
    let mut chunks = Vec::new();
    let mut written = Vec::new();
    while let Some(first) = receiver.recv().await {
        // Everything already queued (at most the channel's capacity) goes in one round of
        // vectored writes.
        let mut next = Some(first);
        while let Some(outbound) = next.take() {
            chunks.extend(outbound.frame);
            written.extend(outbound.written);
            if chunks.len() < GATHER_CHUNKS_MAX {
                next = receiver.try_recv().ok();
            }
        }
        if let Err(error) = codec::write_chunks(&mut write_half, std::mem::take(&mut chunks)).await
        {
            shared.close(&format!("write failed: {error}"));
            return;
        }
        for done in written.drain(..) {
            let _ = done.send(());
        }
    }
    let _ = write_half.shutdown().await;
}

async fn read_loop(read_half: OwnedReadHalf, codec: FrameCodec, shared: Arc<Shared>) {
    let mut frames = FramedRead::new(read_half, codec);
    let reason = loop {
        let payload = match frames.next().await {
            Some(Ok(payload)) => payload,
            Some(Err(error)) => break format!("read failed: {error}"),
            None => break "closed by the broker".to_owned(),
        };
        let Some(correlation_id) = frame::response_correlation_id(&payload) else {
            break "response shorter than its header".to_owned();
        };
        let slot = shared
            .pending
            .lock()
            .expect("pending lock")
            .slots
            .remove(&correlation_id);
        // No slot: its caller timed out or went away.
        let Some(slot) = slot else { continue };
        match frame::decode_response(&payload, slot.api as u16, slot.api_version) {
            Ok((_, Ok(response))) => {
                let _ = slot.reply.send(Ok(response));
            }
            Ok((_, Err((code, message)))) => {
                let _ = slot.reply.send(Err(Error::broker(code, Some(message))));
            }
            Err(error) => {
                let reason = format!("bad {} response: {error}", slot.api.name());
                let _ = slot.reply.send(Err(Error::Protocol {
                    address: shared.address.clone(),
                    reason: reason.clone(),
                }));
                break reason;
            }
        }
    };
    tracing::debug!(address = shared.address, reason, "connection closed");
    shared.close(&reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_named_without_its_port_or_brackets() {
        assert_eq!(host_of("nohost:9400"), "nohost");
        assert_eq!(host_of("[::1]:9400"), "::1");
        assert_eq!(host_of("broker.example"), "broker.example");
    }

    #[test]
    fn an_unresolved_name_is_worded_as_such() {
        let error = Error::Resolve {
            address: "nohost:9400".into(),
            host: "nohost".into(),
            reason: "Name or service not known".into(),
        };
        assert_eq!(
            error.to_string(),
            "cannot resolve 'nohost' (broker address nohost:9400): Name or service not known"
        );
        assert!(error.is_retriable(), "a name may resolve later");
    }
}
