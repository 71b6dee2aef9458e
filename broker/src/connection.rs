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

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use strata_protocol::codec::{FrameCodec, FrameError};
use strata_protocol::frame::{self, RequestHeader};
use strata_protocol::wire::VectoredBuf;
use strata_protocol::{ApiKey, ErrorCode, Request};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::handler::{self, Reply, Started};
use crate::metrics;
use crate::send;

/// Request frames read ahead of the one the in-order loop is running.
const READ_AHEAD_FRAMES: usize = 1;

/// A reply on its way to the writer.
enum Pending {
    /// A reply already known.
    Ready { correlation_id: u32, reply: Reply },
    /// A request waiting in its own task.
    Waiting {
        correlation_id: u32,
        task: JoinHandle<Reply>,
    },
    /// An error decided by the reader; `close` ends the connection after it is sent.
    Failed {
        correlation_id: u32,
        code: ErrorCode,
        message: String,
        close: bool,
    },
}

/// Serves one connection until the client closes it, it idles out, a framing error
/// occurs, or `shutdown` fires. In-flight requests are answered before it returns.
pub async fn serve(stream: TcpStream, broker: Arc<Broker>, shutdown: CancellationToken) {
    let peer = stream
        .peer_addr()
        .map(|address| address.to_string())
        .unwrap_or_default();
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let (read, write) = stream.into_split();
    let (queue, pending) = mpsc::channel(broker.config.connection_in_flight_requests_max);
    let writer = tokio::spawn(write_replies(write, pending));
    let (read_ahead, mut frames) = mpsc::channel(READ_AHEAD_FRAMES);
    let reader = tokio::spawn(read_frames(
        FramedRead::new(read, FrameCodec::new(broker.config.frame_bytes_max)),
        broker.config.connection_idle(),
        read_ahead,
        peer.clone(),
    ));
    let mut producer_id_requests =
        RateLimit::new(broker.config.connection_producer_id_requests_per_second_max);
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => break,
            next = frames.recv() => next,
        };
        let pending = match next {
            None => break,
            Some(Frame::Request { payload, received }) => {
                dispatch(&broker, payload, received, &peer, &mut producer_id_requests).await
            }
            Some(Frame::Failed(failed)) => failed,
        };
        let closes = matches!(pending, Pending::Failed { close: true, .. });
        if queue.send(pending).await.is_err() || closes {
            break;
        }
    }
    reader.abort();
    drop(queue);
    if let Err(error) = writer.await {
        tracing::warn!(%peer, %error, "connection writer failed");
    }
}

/// What the socket reader hands to the connection's in-order loop.
enum Frame {
    /// A request frame's payload, and when its last byte was read.
    Request { payload: Bytes, received: Instant },
    /// A framing error to answer; the reader has stopped.
    Failed(Pending),
}

/// Reads frames off the socket while the in-order loop runs the ones before them, so
/// receiving a request (a copy out of the socket) overlaps appending the previous one
/// (a copy into the page cache). A frame is read only once `frames` has room for it:
/// at most [`READ_AHEAD_FRAMES`] wait, besides the one being read and the one running.
/// Returns at end of stream, after the idle limit, or at a framing error.
async fn read_frames(
    mut socket: FramedRead<impl AsyncRead + Unpin, FrameCodec>,
    idle: Duration,
    frames: mpsc::Sender<Frame>,
    peer: String,
) {
    while let Ok(room) = frames.reserve().await {
        match tokio::time::timeout(idle, socket.next()).await {
            Err(_) => {
                tracing::debug!(%peer, "closing idle connection");
                return;
            }
            Ok(None) => return,
            Ok(Some(Ok(payload))) => room.send(Frame::Request {
                payload,
                received: Instant::now(),
            }),
            Ok(Some(Err(error))) => {
                match framing_failure(&error, socket.read_buffer()) {
                    Some(failed) => room.send(Frame::Failed(failed)),
                    None => {
                        tracing::debug!(%peer, %error, "closing connection after a framing error");
                    }
                }
                return;
            }
        }
    }
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
    producer_id_requests: &mut RateLimit,
) -> Pending {
    match frame::decode_request(&payload) {
        Ok((header, Request::InitProducerId(_))) if !producer_id_requests.take(received) => {
            Pending::Failed {
                correlation_id: header.correlation_id,
                code: ErrorCode::LimitExceeded,
                message: format!(
                    "more than connection_producer_id_requests_per_second_max = {} InitProducerId requests a second on this connection",
                    producer_id_requests.per_second
                ),
                close: false,
            }
        }
        Ok((header, request)) => {
            let RequestHeader {
                correlation_id,
                api_key,
                client_id,
                ..
            } = header;
            let api = ApiKey::from_u16(api_key);
            let client = handler::Client {
                id: &client_id,
                address: peer,
            };
            match handler::start(broker, request, &client).await {
                Started::Ready(reply) => {
                    api.inspect(|api| metrics::record_request(*api, received.elapsed()));
                    Pending::Ready {
                        correlation_id,
                        reply,
                    }
                }
                Started::Waiting(rest) => {
                    let task = tokio::spawn(async move {
                        let reply = rest.await;
                        api.inspect(|api| metrics::record_request(*api, received.elapsed()));
                        reply
                    });
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

async fn write_replies(mut socket: OwnedWriteHalf, mut pending: mpsc::Receiver<Pending>) {
    while let Some(next) = pending.recv().await {
        let (correlation_id, reply) = match next {
            Pending::Ready {
                correlation_id,
                reply,
            } => (correlation_id, reply),
            Pending::Waiting {
                correlation_id,
                task,
            } => match task.await {
                Ok(reply) => (correlation_id, reply),
                Err(error) => {
                    tracing::error!(%error, "request handler failed");
                    (
                        correlation_id,
                        Reply::Error(
                            ErrorCode::Unknown,
                            "the request handler failed; see the broker log".into(),
                        ),
                    )
                }
            },
            Pending::Failed {
                correlation_id,
                code,
                message,
                ..
            } => (correlation_id, Reply::Error(code, message)),
        };
        let mut out = VectoredBuf::new();
        // Every error a client receives is counted here, whole-request or inside a body.
        let files = match &reply {
            Reply::Response(response) => {
                metrics::record_response_errors(response);
                frame::encode_response(&mut out, correlation_id, response);
                &[][..]
            }
            Reply::Records(response, files) => {
                metrics::record_response_errors(response);
                frame::encode_response(&mut out, correlation_id, response);
                files.as_slice()
            }
            Reply::Error(code, message) => {
                metrics::record_error(*code);
                frame::encode_error_response(&mut out, correlation_id, *code, message);
                &[][..]
            }
            Reply::Nothing => continue,
        };
        match send::write_chunks(&mut socket, out.into_chunks(), files).await {
            Ok(0) => {}
            Ok(by_sendfile) => metrics::record_sendfile(by_sendfile),
            Err(error) => {
                tracing::debug!(%error, "client went away while writing");
                return;
            }
        }
    }
    let _ = socket.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A frame: the big-endian length prefix, then `length` bytes of `fill`.
    fn frame(length: usize, fill: u8) -> Vec<u8> {
        let mut frame = u32::try_from(length).unwrap().to_be_bytes().to_vec();
        frame.resize(frame::LENGTH_PREFIX_BYTES + length, fill);
        frame
    }

    async fn next_payload(frames: &mut mpsc::Receiver<Frame>) -> Bytes {
        match frames.recv().await {
            Some(Frame::Request { payload, .. }) => payload,
            Some(Frame::Failed(_)) => panic!("a framing failure instead of a request"),
            None => panic!("the reader stopped"),
        }
    }

    // Paused time: the runtime moves the clock on only once every task is blocked.
    #[tokio::test(start_paused = true)]
    async fn the_reader_takes_no_more_off_the_socket_while_its_read_ahead_is_full() {
        const FRAME_BYTES: usize = 64 * 1024;
        const FRAMES: u8 = 4;
        // The socket buffers 1 KiB, far less than a frame: a client gets a frame out only
        // as fast as the reader takes it in.
        let (mut client, socket) = tokio::io::duplex(1024);
        let written = Arc::new(AtomicUsize::new(0));
        let sender = tokio::spawn({
            let written = Arc::clone(&written);
            async move {
                for fill in 0..FRAMES {
                    client.write_all(&frame(FRAME_BYTES, fill)).await.unwrap();
                    written.fetch_add(1, Ordering::AcqRel);
                }
                client
            }
        });
        let (read_ahead, mut frames) = mpsc::channel(READ_AHEAD_FRAMES);
        let reader = tokio::spawn(read_frames(
            FramedRead::new(socket, FrameCodec::new(1 << 20)),
            Duration::from_secs(30),
            read_ahead,
            "test".into(),
        ));
        // Nothing takes frames out: once the first fills the read-ahead, the reader stops
        // reading, so the client cannot finish writing the second.
        while frames.len() < READ_AHEAD_FRAMES {
            tokio::task::yield_now().await;
        }
        // With the clock paused, this sleep ends only once the reader and the client are
        // both blocked: a reader that did not stop would have taken the rest by then.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(written.load(Ordering::Acquire), 1);
        // Taking frames out lets the rest through, whole and in order.
        for fill in 0..FRAMES {
            let payload = next_payload(&mut frames).await;
            assert_eq!(payload.len(), FRAME_BYTES);
            assert!(payload.iter().all(|byte| *byte == fill));
        }
        assert_eq!(written.load(Ordering::Acquire), usize::from(FRAMES));
        // The client closing its end stops the reader.
        drop(sender.await.unwrap());
        assert!(frames.recv().await.is_none());
        reader.await.unwrap();
    }

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
