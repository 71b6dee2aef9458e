//! One client connection: reads frames, runs requests, writes responses in request order.
//!
//! ```text
//!  socket ─▶ reader ─▶ read-ahead ─▶ in-order loop ─────▶ bounded queue ─▶ writer ─▶ socket
//!            (framing)  (1 frame)     │ decode, run the          ▲ replies awaited
//!                                     │ in-order part            │ in order
//!                                     │ (appends, admin, ...)    │
//!                                     └─ spawn the waiting part ─┘ (long-poll, acks=all)
//! ```
//!
//! The reader task only takes frames off the socket, so receiving the next request (a
//! copy out of the socket) overlaps running this one (for a produce, a copy into the page
//! cache) on another core. Every request's state-changing part runs on the in-order loop,
//! one request at a time in arrival order, so pipelined produces to a partition are
//! appended in the order they were sent (also with `acks = none`, which has no response
//! to order by). Only waiting runs in a task of its own, so a parked fetch does not hold
//! up later requests, only their responses. The queue's capacity is
//! `connection_in_flight_requests_max`: when it is full the loop stops, the read-ahead
//! fills, the reader stops reading, and TCP pushes back on the client. A panic in a
//! waiting task fails that request (`Unknown`) and nothing else. A framing error
//! (oversized length prefix, unreadable header) is answered where a correlation id can
//! be read, and then closes this connection only. InitProducerId requests beyond
//! `connection_producer_id_requests_per_second_max` are answered `LimitExceeded`.
//!
//! Memory is bounded four ways. A frame's bytes come from the broker-wide request budget
//! (`request_memory_bytes_max`) before the reader buffers them, so a spent budget stops
//! reading on every connection. A reply's bytes come from the broker-wide response budget
//! (`response_memory_bytes_max`) before it is queued for the writer, and go back once it
//! is written: while that budget is spent, the in-order loop waits with its reply, reads
//! nothing more, and TCP pushes back. A waiting request's task takes its reply's share
//! when the reply is ready, at once and past the budget if it must (see
//! `memory::MemoryBudget::overdraw`): replies queued behind it may hold the budget and
//! leave only after it, so waiting would deadlock. The two budgets are separate for the
//! same reason: a loop that holds request bytes while it waits to queue a reply must not
//! wait for another that holds reply bytes while it waits to read. A reply write that
//! makes no progress for `write_timeout_ms` ends the connection (see
//! `crate::send::ReplySocket`): its queued replies are dropped, their bytes given back,
//! its waiting tasks aborted, and the segment files their records lie in are let go. And
//! the partitions its parked fetches watch are bounded by
//! `connection_fetch_wait_partitions_max`, within the broker's
//! `fetch_wait_partitions_total_max` (see `crate::handler::FetchWatches`). The broker-wide
//! budgets are a connection's [`Budgets`].
//!
//! # Layout
//! - This file: the in-order loop, dispatch, and the writer.
//! - `read`: the reader, which reads within the request budget.
//! - `memory`: a budget of bytes (`MemoryBudget`), for requests and for replies.

mod memory;
mod read;

use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use strata_protocol::codec::FrameError;
use strata_protocol::frame::{self, RequestHeader};
use strata_protocol::wire::VectoredBuf;
use strata_protocol::{ApiKey, ErrorCode, Request};
use strata_storage::FileRange;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use self::memory::{MemoryBudget, Reservation};
use self::read::{FrameReader, ReadTimeouts};
use crate::broker::Broker;
use crate::config::Config;
use crate::handler::{self, FetchWatches, Reply, Started};
use crate::metrics;
use crate::send::{self, ReplySocket};

/// Request frames read ahead of the one the in-order loop is running.
const READ_AHEAD_FRAMES: usize = 1;

/// A reply on its way to the writer.
enum Pending {
    /// A reply already known, encoded (`None`: nothing is sent), and the heap bytes it
    /// holds.
    Ready {
        encoded: Option<Encoded>,
        heap_bytes: usize,
    },
    /// A request waiting in its own task, aborted if the reply is dropped unsent. The
    /// task reserves its reply's bytes when the reply is ready, and encodes it.
    Waiting {
        correlation_id: u32,
        task: AbortOnDropHandle<(Option<Encoded>, Reservation)>,
    },
    /// An error decided by the reader; `close` ends the connection after it is sent.
    Failed {
        correlation_id: u32,
        code: ErrorCode,
        message: String,
        close: bool,
    },
}

impl Pending {
    /// The bytes to reserve before queueing this for the writer; a waiting request's task
    /// reserves its own.
    fn heap_bytes(&self) -> usize {
        match self {
            Pending::Ready { heap_bytes, .. } => *heap_bytes,
            Pending::Waiting { .. } => 0,
            Pending::Failed { message, .. } => message.len(),
        }
    }
}

/// A reply encoded for the socket: the frame's chunks, and the segment file ranges its
/// records lie in (which the writer may send with `sendfile`).
struct Encoded {
    chunks: Vec<Bytes>,
    files: Vec<FileRange>,
}

/// Encodes `reply` to `correlation_id`, its body at `api_version` (the request's),
/// dropping its decoded form: a queued reply holds one copy, the one its reservation
/// counts. `None` for [`Reply::Nothing`]. Every error a client is sent is counted here,
/// whole-request or inside a body.
fn encode(correlation_id: u32, api_version: u16, reply: Reply) -> Option<Encoded> {
    let mut out = VectoredBuf::new();
    let files = match reply {
        Reply::Response(response) => {
            metrics::record_response_errors(&response);
            frame::encode_response(&mut out, correlation_id, api_version, &response);
            Vec::new()
        }
        Reply::Records(response, files) => {
            metrics::record_response_errors(&response);
            frame::encode_response(&mut out, correlation_id, api_version, &response);
            files
        }
        Reply::Error(code, message) => return Some(encode_error(correlation_id, code, &message)),
        Reply::Nothing => return None,
    };
    Some(Encoded {
        chunks: out.into_chunks(),
        files,
    })
}

/// Encodes a whole-request failure to `correlation_id`, and counts it.
fn encode_error(correlation_id: u32, code: ErrorCode, message: &str) -> Encoded {
    metrics::record_error(code);
    let mut out = VectoredBuf::new();
    frame::encode_error_response(&mut out, correlation_id, code, message);
    Encoded {
        chunks: out.into_chunks(),
        files: Vec::new(),
    }
}

/// A reply in the writer's queue, with its share of the response budget.
struct Queued {
    pending: Pending,
    reservation: Reservation,
}

/// What every connection of a broker draws on: the request and response budgets and the
/// partitions parked fetches may watch. Clones share them. Thread-safe.
#[derive(Debug, Clone)]
pub struct Budgets {
    requests: MemoryBudget,
    replies: MemoryBudget,
    fetch_watches: Arc<FetchWatches>,
}

impl Budgets {
    /// The budgets `config` sets: `request_memory_bytes_max`, `response_memory_bytes_max`
    /// and `fetch_wait_partitions_total_max`.
    pub fn new(config: &Config) -> Self {
        Self {
            requests: MemoryBudget::new(
                config.request_memory_bytes_max,
                "strata_request_memory_bytes",
            ),
            replies: MemoryBudget::new(
                config.response_memory_bytes_max,
                "strata_response_memory_bytes",
            ),
            fetch_watches: FetchWatches::new(config.fetch_wait_partitions_total_max),
        }
    }
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client listener.
    Clients,
    /// The cluster listener: a replica of this broker's partitions.
    Cluster,
}

/// Serves one connection until the client closes it, it idles out, stops reading its
/// replies, a framing error occurs, or `shutdown` fires. In-flight requests are answered
/// before it returns. It draws on the broker's `budgets`.
pub async fn serve(
    stream: TcpStream,
    broker: Arc<Broker>,
    (budgets, origin): (Budgets, Origin),
    shutdown: CancellationToken,
) {
    let peer = stream
        .peer_addr()
        .map(|address| address.to_string())
        .unwrap_or_default();
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let config = &broker.config;
    let (read, write) = stream.into_split();
    let (queue, pending) = mpsc::channel(config.connection_in_flight_requests_max);
    let socket = ReplySocket::new(write, config.write_timeout());
    let writer = tokio::spawn(write_replies(socket, pending, peer.clone()));
    let (read_ahead, mut frames) = mpsc::channel(READ_AHEAD_FRAMES);
    let timeouts = ReadTimeouts {
        idle: config.connection_idle(),
        frame: config.frame_read_timeout(),
    };
    let reader = tokio::spawn(read::read_frames(
        FrameReader::new(read, config.frame_bytes_max, budgets.requests),
        timeouts,
        read_ahead,
        peer.clone(),
    ));
    let mut requests = Requests {
        origin,
        producer_ids: RateLimit::new(config.connection_producer_id_requests_per_second_max),
        fetch_watches: FetchWatches::within(
            config.connection_fetch_wait_partitions_max,
            &budgets.fetch_watches,
        ),
        replies: budgets.replies.clone(),
    };
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => break,
            // The writer gave up on the client: read nothing more.
            () = queue.closed() => break,
            next = frames.recv() => next,
        };
        let pending = match next {
            None => break,
            Some(Frame::Request { payload, received }) => {
                dispatch(&broker, payload, received, &peer, &mut requests).await
            }
            Some(Frame::Failed(failed)) => failed,
        };
        let closes = matches!(pending, Pending::Failed { close: true, .. });
        // While the response budget is spent, this connection reads nothing more.
        let reservation = tokio::select! {
            () = queue.closed() => break,
            reservation = budgets.replies.reserve(pending.heap_bytes()) => reservation,
        };
        let queued = Queued {
            pending,
            reservation,
        };
        if queue.send(queued).await.is_err() || closes {
            break;
        }
    }
    reader.abort();
    drop(queue);
    if let Err(error) = writer.await {
        tracing::warn!(%peer, %error, "connection writer failed");
    }
}

/// What one connection's in-order loop keeps across requests.
struct Requests {
    /// Which listener the connection came in on.
    origin: Origin,
    /// InitProducerId requests, against their rate limit.
    producer_ids: RateLimit,
    /// The partitions this connection's parked fetches watch.
    fetch_watches: Arc<FetchWatches>,
    /// The broker's response budget, which waiting requests' tasks draw on.
    replies: MemoryBudget,
}

/// What the socket reader hands to the connection's in-order loop.
enum Frame {
    /// A request frame's payload, and when its last byte was read.
    Request { payload: Bytes, received: Instant },
    /// A framing error to answer; the reader has stopped.
    Failed(Pending),
}

/// Reads the correlation id at bytes 4..8 of a request payload, present once the
/// payload has 8 bytes, before the rest of the header can be trusted.
fn correlation_id(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?))
}

/// Answers an oversized frame if its correlation id already arrived.
fn framing_failure(error: &FrameError, buffered: &BytesMut) -> Option<Pending> {
    let FrameError::TooLarge { length, max } = error else {
        return None;
    };
    let correlation_id = correlation_id(buffered.get(frame::LENGTH_PREFIX_BYTES..)?)?;
    Some(Pending::Failed {
        correlation_id,
        code: ErrorCode::FrameTooLarge,
        message: format!(
            "request frame of {length} bytes exceeds frame_bytes_max {max}; the connection is closed"
        ),
        close: true,
    })
}

/// Runs a request's in-order part here, on the in-order loop, and leaves only its waiting
/// to a task of its own.
async fn dispatch(
    broker: &Arc<Broker>,
    payload: Bytes,
    received: Instant,
    peer: &str,
    requests: &mut Requests,
) -> Pending {
    match frame::decode_request(&payload) {
        Ok((header, Request::InitProducerId(_))) if !requests.producer_ids.take(received) => {
            Pending::Failed {
                correlation_id: header.correlation_id,
                code: ErrorCode::LimitExceeded,
                message: format!(
                    "more than connection_producer_id_requests_per_second_max = {} InitProducerId requests a second on this connection",
                    requests.producer_ids.per_second
                ),
                close: false,
            }
        }
        Ok((header, request)) => {
            let RequestHeader {
                correlation_id,
                api_key,
                api_version,
                client_id,
            } = header;
            let api = ApiKey::from_u16(api_key);
            let client = handler::Client {
                id: &client_id,
                address: peer,
                fetch_watches: &requests.fetch_watches,
                origin: requests.origin,
                api_version,
            };
            match handler::start(broker, request, &client).await {
                Started::Ready(reply) => {
                    api.inspect(|api| metrics::record_request(*api, received.elapsed()));
                    Pending::Ready {
                        heap_bytes: reply.heap_bytes(api_version),
                        encoded: encode(correlation_id, api_version, reply),
                    }
                }
                Started::Waiting(rest) => {
                    let replies = requests.replies.clone();
                    let task = AbortOnDropHandle::new(tokio::spawn(async move {
                        let reply = rest.await;
                        api.inspect(|api| metrics::record_request(*api, received.elapsed()));
                        // Replies queued behind this one may hold the budget, and they
                        // leave only after it: waiting for them would deadlock.
                        let reservation = replies.overdraw(reply.heap_bytes(api_version));
                        (encode(correlation_id, api_version, reply), reservation)
                    }));
                    Pending::Waiting {
                        correlation_id,
                        task,
                    }
                }
            }
        }
        // The header decoded, so framing is intact: answer and keep the connection.
        Err((Some(header), error)) => Pending::Failed {
            correlation_id: header.correlation_id,
            code: error.error_code(),
            message: error.to_string(),
            close: false,
        },
        // The header itself is unreadable: answer if its correlation id is there, then close.
        Err((None, error)) => Pending::Failed {
            correlation_id: correlation_id(&payload).unwrap_or(0),
            code: ErrorCode::InvalidRequest,
            message: format!("unreadable request header: {error}; the connection is closed"),
            close: true,
        },
    }
}

/// A token bucket: `per_second` tokens a second, holding at most `per_second`. One per
/// connection; not shared.
struct RateLimit {
    per_second: u32,
    tokens: f64,
    refilled: Option<Instant>,
}

impl RateLimit {
    fn new(per_second: u32) -> Self {
        Self {
            per_second,
            tokens: f64::from(per_second),
            refilled: None,
        }
    }

    /// Takes a token at `now` if there is one.
    fn take(&mut self, now: Instant) -> bool {
        let capacity = f64::from(self.per_second);
        if let Some(refilled) = self.refilled {
            let elapsed = now.saturating_duration_since(refilled).as_secs_f64();
            self.tokens = (self.tokens + elapsed * capacity).min(capacity);
        }
        self.refilled = Some(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// Writes replies in request order until the queue closes, the client goes away, or a
/// write makes no progress for `write_timeout_ms`. Returning drops the replies still
/// queued, which aborts their waiting tasks and lets go of their segment files.
async fn write_replies(mut socket: ReplySocket, mut pending: mpsc::Receiver<Queued>, peer: String) {
    // A reply's reservations are dropped, given back, once it is written.
    while let Some(Queued {
        pending: next,
        reservation: _queued,
    }) = pending.recv().await
    {
        let (encoded, _reserved) = match next {
            Pending::Ready { encoded, .. } => (encoded, None),
            Pending::Waiting {
                correlation_id,
                task,
            } => match task.await {
                Ok((encoded, reservation)) => (encoded, Some(reservation)),
                Err(error) => {
                    tracing::error!(%error, "request handler failed");
                    let encoded = encode_error(
                        correlation_id,
                        ErrorCode::Unknown,
                        "the request handler failed; see the broker log",
                    );
                    (Some(encoded), None)
                }
            },
            Pending::Failed {
                correlation_id,
                code,
                message,
                ..
            } => (Some(encode_error(correlation_id, code, &message)), None),
        };
        let Some(Encoded { chunks, files }) = encoded else {
            continue;
        };
        match send::write_chunks(&mut socket, chunks, &files).await {
            Ok(0) => {}
            Ok(by_sendfile) => metrics::record_sendfile(by_sendfile),
            Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                tracing::info!(%peer, "closing a connection whose client stopped reading its replies for write_timeout_ms");
                return;
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "client went away while writing");
                return;
            }
        }
    }
    let _ = socket.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_rate_limit_allows_a_second_of_requests_then_refills() {
        let start = Instant::now();
        let mut limit = RateLimit::new(4);
        assert!((0..4).all(|_| limit.take(start)));
        assert!(!limit.take(start));
        assert!(!limit.take(start + Duration::from_millis(200)));
        assert!(limit.take(start + Duration::from_millis(260)));
        assert!(!limit.take(start + Duration::from_millis(260)));
        // Idle time refills at most one second's worth.
        let later = start + Duration::from_secs(60);
        assert!((0..4).all(|_| limit.take(later)));
        assert!(!limit.take(later));
    }
}
